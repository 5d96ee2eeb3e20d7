"""``verifybot run telegram`` as its own process, under 200 members verifying at once.

What it measures
    The bot exactly as an operator runs it (``python -m verifybot db upgrade`` as the
    Procfile's release step, then ``python -m verifybot run telegram``, long polling, JSON
    logs at INFO written to a file) against the Bot API emulator and the Vonage
    emulator (Verify v2 over HTTPS), both running in this process's threads, with a private
    redis-server and a SQLite file (``--database-url`` for PostgreSQL). The send pace is
    lifted (``TELEGRAM_SEND_RATE=0``) and the core's rate limits are off, the SMS prefix cap
    among them.

    Workload: waves (``--waves``, 3) of N new members (``--members``, 200) at once, in a
    closed loop: each sends ``/start``, some junk text, their number, a wrong code and the
    right code, each after the bot's answer to the one before. Each wave's figures are
    printed, then the median wave's (by CPU) in full:

    - messages/s (member messages, 5 per member, over the whole wave);
    - reply latency p50/p99 per message kind: from the update being queued at the emulator
      to the bot's answering sendMessage taking effect there;
    - the bot process's own CPU per message: utime + stime of the process and its reaped
      children, from ``/proc/<pid>/stat``, over the wave only;
    - Redis round trips per message: every command the bot sends, counted by a small proxy
      between the bot and redis-server (an EVALSHA is one, whatever the script does inside);
    - peak RSS of the bot (``VmHWM``);
    - Vonage starts per phone entry in a double-send probe: 20 more members each send their
      number twice in a row (two updates, as a double tap makes); one Verify start each is
      right.

    Three warm-up members, then a cold wave (while the pools of Redis and Bot API connections
    and the worker threads fill), go first and are not counted. A single wave varies by about
    25 % on a shared machine, hence the median. The load average is printed: the machine may
    be shared, so CPU per message is the main figure, not messages/s.

        .venv/bin/python bench/telegram_process.py [--members 200] [--waves 3]
        [--database-url URL]
        [--profile]   # py-spy record the bot during the waves, if py-spy is installed
        [--syscalls]  # count the bot's system calls and context switches (perf)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import certifi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import VONAGE_API_KEY, VONAGE_API_SECRET, VONAGE_APP_ID
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from verifybot.embedded_redis import EmbeddedRedis

#: (kind, what the member sends, a piece of the answer that means the bot has replied)
ASKED = "send me your mobile phone number"
HELP = "doesn't look like a phone number"
SENT = "I've sent a"
WRONG = "isn't right"
VERIFIED = "You're verified"
KINDS = ("start", "junk", "number", "wrong code", "right code")
PROBE_MEMBERS = 20
WAIT = 120.0  # seconds for one answer; generous, a stuck bot fails the run


# -- the Bot API emulator, telling this loop of each message the bot sends -------------------


class Replies:
    """Each sendMessage the bot makes, handed to whoever waits for that chat."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[int, tuple[str, asyncio.Future[float]]] = {}

    def sent(self, chat: int, text: str, at: float) -> None:  # the emulator's thread
        self.loop.call_soon_threadsafe(self._deliver, chat, text, at)

    def _deliver(self, chat: int, text: str, at: float) -> None:
        wanted = self.waiting.get(chat)
        if wanted is not None and wanted[0] in text and not wanted[1].done():
            del self.waiting[chat]
            wanted[1].set_result(at)

    def expect(self, chat: int, text: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = self.loop.create_future()
        self.waiting[chat] = (text, future)
        return future


class Emulator(TelegramEmulator):
    replies: Replies | None = None

    def _handle(
        self, http_method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        status, body = super()._handle(http_method, path, headers, raw)
        if status == 200 and self.replies and path.lower().endswith("/sendmessage"):
            result = body["result"]
            self.replies.sent(result["chat"]["id"], result.get("text", ""), time.time())
        return status, body


# -- Redis round trips: a counting proxy ----------------------------------------------------


class CountingProxy:
    """TCP in front of redis-server's unix socket; counts the commands clients send."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.commands = 0
        #: Commands by name (an EVALSHA by its script's SHA1, shortened).
        self.names: Counter[str] = Counter()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        pending = bytearray()

        async def upstream() -> None:
            while data := await reader.read(65536):
                pending.extend(data)
                self.commands += _complete_commands(pending, self.names)
                up_writer.write(data)
            up_writer.close()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
            writer.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


def _complete_commands(buffer: bytearray, names: Counter[str]) -> int:
    """Count (and drop) the whole RESP commands at the start of ``buffer``."""
    count, pos = 0, 0
    while True:
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            break
        items, p = int(buffer[pos + 1 : end]), end + 2
        for _ in range(items):
            e = buffer.find(b"\r\n", p)
            if e < 0:
                p = -1
                break
            p = e + 2 + int(buffer[p + 1 : e]) + 2
            if p > len(buffer):
                p = -1
                break
        if p < 0:
            break
        names[_name(bytes(buffer[end + 2 : p]))] += 1
        count, pos = count + 1, p
    del buffer[:pos]
    return count


def _name(command: bytes) -> str:
    parts = command.split(b"\r\n")
    name = parts[1].decode().upper()
    return f"{name} {parts[3][:8].decode()}" if name == "EVALSHA" else name


# -- the bot process ------------------------------------------------------------------------


@dataclass
class BotProcess:
    pid: int

    def cpu(self) -> float:
        """Seconds of CPU: the process and its reaped children, user and system."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def cpu_by_thread(self) -> dict[str, float]:
        """Seconds of CPU of the event loop's thread and of all the others (Python names no
        thread for the kernel, so the directory's, the SDK's and asyncio's are one figure)."""
        out: dict[str, float] = defaultdict(float)
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with suppress(OSError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                name = "event loop" if task.name == str(self.pid) else "other threads"
                out[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def user_system(self) -> tuple[float, float]:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def peak_rss_mib(self, field: str = "VmHWM") -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return 0.0


# -- members ----------------------------------------------------------------------------------


@dataclass
class Wave:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def number_of(index: int) -> tuple[str, str]:
    """A member's number as typed, and as Vonage sees it (E.164 without "+")."""
    return f"+44 7400 {index:06d}", f"447400{index:06d}"


async def say(
    emu: Emulator, replies: Replies, user: int, text: str, answer: str, lat: list[float]
) -> None:
    waiting = replies.expect(user, answer)
    sent = time.time()
    emu.send_text(user, text)
    at = await asyncio.wait_for(waiting, WAIT)
    lat.append((at - sent) * 1000)


async def verify(
    emu: Emulator, vonage: VonageEmulator, replies: Replies, user: int, index: int, wave: Wave
) -> None:
    typed, e164 = number_of(index)
    lat = wave.latencies
    await say(emu, replies, user, "/start", ASKED, lat["start"])
    await say(emu, replies, user, "what is this bot?", HELP, lat["junk"])
    await say(emu, replies, user, typed, SENT, lat["number"])
    code = vonage.last_code(e164)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    await say(emu, replies, user, wrong, WRONG, lat["wrong code"])
    await say(emu, replies, user, code, VERIFIED, lat["right code"])


async def double_send(
    emu: Emulator, vonage: VonageEmulator, replies: Replies, users: list[int], first: int
) -> float:
    """Each member sends their number twice in a row; Verify starts per phone entry."""
    for user in users:
        await say(emu, replies, user, "/start", ASKED, [])
    done = []
    for n, user in enumerate(users):
        typed, _ = number_of(first + n)
        done.append(replies.expect(user, SENT))
        emu.send_text(user, typed)
        emu.send_text(user, typed)
    await asyncio.wait_for(asyncio.gather(*done), WAIT)
    await asyncio.sleep(2.0)  # let the second copies finish, whatever they answer
    numbers = {number_of(first + n)[1] for n in range(len(users))}
    starts = sum(
        1
        for call in vonage.calls
        if call.method == "POST"
        and call.path.rstrip("/") == "/v2/verify"
        and any(step.get("to") in numbers for step in call.body.get("workflow", []))
    )
    return starts / len(users)


# -- the run ----------------------------------------------------------------------------------


def key_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def bot_environment(
    tmp: Path, emu: TelegramEmulator, vonage: VonageEmulator, redis_url: str, database_url: str
) -> dict[str, str]:
    from bot.settings import Settings

    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    limits = {name.upper(): "off" for name in Settings.model_fields if name.startswith("limit_")}
    return {
        **env,
        **limits,
        "TELEGRAM_BOT_TOKEN": emu.token,
        "TELEGRAM_API_BASE_URL": emu.base_url,
        "TELEGRAM_GATE_MODE": "off",
        "TELEGRAM_SEND_RATE": "0",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": "bench:",
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp / "data"),
        "VERIFIER": "vonage",
        "VONAGE_APPLICATION_ID": VONAGE_APP_ID,
        "VONAGE_PRIVATE_KEY_PATH": str(tmp / "private.key"),
        "VONAGE_API_HOST": vonage.host,
        "RESEND_COOLDOWN_SECONDS": "0",
        # Every member's code goes out before any is entered, as in a pumping attack: the
        # breaker would rightly pause the wave (bench/engine_throughput.py does the same).
        "FRAUD_BREAKER": "off",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "REQUESTS_CA_BUNDLE": production_bundle(tmp, vonage.ca_bundle),
        "NO_PROXY": "127.0.0.1,localhost",
    }


def production_bundle(tmp: Path, emulator_ca: str) -> str:
    """certifi's CA bundle, which a real bot verifies Vonage against, plus the emulator's CA:
    the bundle's size sets the memory and CPU of each TLS context (bench/README.md)."""
    path = tmp / "ca-bundle.pem"
    path.write_text(Path(certifi.where()).read_text() + Path(emulator_ca).read_text())
    return str(path)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@dataclass
class Figures:
    """One wave's measurements."""

    wall: float
    cpu: float
    user: float
    system: float
    threads: dict[str, float]
    own: float  # this benchmark's process (emulators, proxy)
    server: float  # redis-server
    commands: int
    setup: int
    names: Counter[str]


async def measure_wave(
    emu: Emulator,
    vonage: VonageEmulator,
    replies: Replies,
    proxy: CountingProxy,
    bot: BotProcess,
    server: BotProcess,
    users: list[int],
    first: int,
    wave: Wave,
) -> Figures:
    threads, split = bot.cpu_by_thread(), bot.user_system()
    own, server_cpu = time.process_time(), server.cpu()
    commands, cpu, wall = proxy.commands, bot.cpu(), time.perf_counter()
    names = proxy.names.copy()
    await asyncio.gather(
        *(verify(emu, vonage, replies, u, first + n, wave) for n, u in enumerate(users))
    )
    wall = time.perf_counter() - wall
    after = bot.user_system()
    names = proxy.names - names
    # A new pooled connection says HELLO and CLIENT SETINFO once: set-up, not traffic.
    setup = sum(n for name, n in names.items() if name in ("HELLO", "CLIENT"))
    return Figures(
        wall=wall,
        cpu=bot.cpu() - cpu,
        user=after[0] - split[0],
        system=after[1] - split[1],
        threads={k: v - threads.get(k, 0.0) for k, v in bot.cpu_by_thread().items()},
        own=time.process_time() - own,
        server=server.cpu() - server_cpu,
        commands=proxy.commands - commands - setup,
        setup=setup,
        names=names,
    )


async def run(
    members: int, waves: int, database_url: str | None, profile: bool, syscalls: bool
) -> None:
    loop = asyncio.get_running_loop()
    tmp = Path(tempfile.mkdtemp(prefix="bench-telegram-process-"))
    private, public = key_pair()
    (tmp / "private.key").write_bytes(private)
    redis = EmbeddedRedis(tmp / "redis", persist=False)
    redis.start()
    proxy = CountingProxy(str(redis.socket_path))
    await proxy.start()
    replies = Replies(loop)
    vonage = VonageEmulator(
        application_id=VONAGE_APP_ID,
        public_key_pem=public,
        api_key=VONAGE_API_KEY,
        api_secret=VONAGE_API_SECRET,
    )
    process: asyncio.subprocess.Process | None = None
    spy: subprocess.Popen[bytes] | None = None
    counter: subprocess.Popen[bytes] | None = None
    log = tmp / "bot.log"
    wave = Wave()
    figures: list[Figures] = []
    try:
        emu = Emulator()
        emu.replies = replies
        with emu, vonage:
            env = bot_environment(
                tmp, emu, vonage, proxy.url, database_url or f"sqlite:///{tmp}/bench.db"
            )
            await release_step(env, tmp, log)
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "verifybot", "run", "telegram",
                    env=env, cwd=tmp, stdout=out, stderr=out,
                )  # fmt: skip
            bot = BotProcess(process.pid)
            assert redis._process is not None  # started here, not joined
            server = BotProcess(redis._process.pid)
            await _until(lambda: bool(emu.calls_to("getUpdates")), process, log)

            warmup = [emu.add_user(f"W{i}") for i in range(3)]
            for n, user in enumerate(warmup):
                await verify(emu, vonage, replies, user, 900000 + n, Wave())

            # A cold wave first: the pools (Redis, Bot API, threads) fill as in a running bot.
            cold_users = [emu.add_user(f"C{i}") for i in range(members)]
            cold = await measure_wave(
                emu, vonage, replies, proxy, bot, server, cold_users, 600000, Wave()
            )
            started_rss = bot.peak_rss_mib("VmRSS")
            if profile:
                spy = _start_py_spy(process.pid, tmp)
            if syscalls:
                counter = _start_perf(process.pid, tmp)
            for w in range(waves):
                users = [emu.add_user(f"M{w}-{i}") for i in range(members)]
                figures.append(
                    await measure_wave(
                        emu, vonage, replies, proxy, bot, server, users, w * members, wave
                    )
                )
            for recorder in (spy, counter):
                if recorder is not None:
                    recorder.send_signal(signal.SIGINT)
                    recorder.wait(timeout=60)
            load = os.getloadavg()

            probe = [emu.add_user(f"P{i}") for i in range(PROBE_MEMBERS)]
            starts_per_entry = await double_send(emu, vonage, replies, probe, 500000)
            rss = bot.peak_rss_mib()
            errors = list(emu.internal_errors) + [str(e) for e in vonage.internal_errors]
            await _stop(process)
    finally:
        await _stop(process)
        await proxy.stop()
        redis.stop()

    messages = members * len(KINDS)
    ms = 1000 / messages
    output = log.read_text(errors="replace")
    print(
        f"{waves} waves of {members} members ({messages} messages each), load average {load[0]:.2f}"
    )
    for n, f in enumerate([cold, *figures]):
        print(
            f"  wave {n}: {messages / f.wall:6.1f} msgs/s, bot CPU {f.cpu * ms:.2f} ms/msg, "
            f"Redis {f.commands / messages:.3f} round trips/msg"
            + (" (cold, not counted: the pools fill)" if n == 0 else "")
        )
    # The median wave by CPU per message: single waves vary by ±25 % on a shared machine.
    f = sorted(figures, key=lambda f: f.cpu)[len(figures) // 2]
    print(f"the median wave (by CPU), {f.wall:.1f} s:")
    print(f"  msgs/s              {messages / f.wall:8.1f}")
    print(f"  bot CPU per message {f.cpu * ms:8.2f} ms")
    per = {name: f"{t * ms:.2f}" for name, t in f.threads.items()}
    print(f"    user {f.user * ms:.2f} ms, system {f.system * ms:.2f} ms; in", per)
    # The machine's other CPU per message: with 2 cores, msgs/s cannot pass 2000 ms / the sum.
    print(f"  beside it: this benchmark (both emulators) {f.own * ms:.2f} ms, redis-server", end="")
    print(f" {f.server * ms:.2f} ms per message")
    print(f"  Redis per message   {f.commands / messages:8.3f} round trips", end="")
    print(f" (+ {f.setup} commands setting up new connections)")
    print("   ", ", ".join(f"{n} {c} ({c / messages:.3f})" for n, c in f.names.most_common()))
    print(f"  peak RSS            {rss:8.1f} MiB (RSS after the cold wave {started_rss:.1f} MiB)")
    print(f"  starts/phone entry  {starts_per_entry:8.2f} (double-send probe, {PROBE_MEMBERS})")
    print(f"  {'kind':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  (all waves)")
    for kind in KINDS:
        values = wave.latencies[kind]
        print(
            f"  {kind:<12} {statistics.median(values):8.1f} {percentile(values, 0.99):8.1f} "
            f"{max(values):8.1f}"
        )
    errors += [line for line in output.splitlines() if '"level": "error"' in line][:5]
    if errors:
        print("errors:", *errors, sep="\n  ")
    if counter is not None:
        print("  per message (perf stat over all the waves):")
        for name, count in _perf_counts(tmp / "perf.txt"):
            print(f"    {name:<28} {count / (messages * waves):8.2f}")
    if profile:
        print(f"py-spy profile: {tmp / 'profile.txt'}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


async def _stop(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, as a platform stops a bot, while the emulators still answer."""
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        process.kill()
        await process.wait()


def _start_py_spy(pid: int, tmp: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: no profile")
        return None
    command = [spy, "record", "--gil", "-r", "200", "-f", "raw", "-o", str(tmp / "profile.txt")]
    return subprocess.Popen([*command, "--pid", str(pid)], stdout=subprocess.DEVNULL)  # noqa: S603


#: What ``--syscalls`` counts: the hand-offs between threads (futex), the event loop's waits
#: and wake-ups, and the sockets' traffic.
PERF_EVENTS = (
    "context-switches",
    *(
        f"syscalls:sys_enter_{name}"
        for name in (
            "futex", "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "select", "pselect6",
            "read", "write", "sendto", "recvfrom", "sendmsg", "recvmsg", "getpid",
            "clock_nanosleep", "pread64", "pwrite64", "fcntl", "openat", "close",
            "fdatasync", "fsync", "mmap", "munmap", "madvise", "clone3", "ioctl",
        )
    ),
)  # fmt: skip


def _start_perf(pid: int, tmp: Path) -> subprocess.Popen[bytes] | None:
    perf = shutil.which("perf")
    if perf is None:
        print("perf is not installed: no system call counts")
        return None
    events = ",".join(PERF_EVENTS)
    command = [perf, "stat", "-x", ",", "-e", events, "-o", str(tmp / "perf.txt")]
    return subprocess.Popen([*command, "--pid", str(pid)], stdout=subprocess.DEVNULL)  # noqa: S603


def _perf_counts(path: Path) -> list[tuple[str, int]]:
    counts = []
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].isdigit() and int(fields[0]) > 0:
            counts.append((fields[2].removeprefix("syscalls:sys_enter_"), int(fields[0])))
    return sorted(counts, key=lambda c: -c[1])


async def release_step(env: dict[str, str], tmp: Path, log: Path) -> None:
    """``verifybot db upgrade``, as the Procfile's release step runs it before the bot: the
    bot then starts on a migrated schema and never loads alembic (a first start on an empty
    database migrates in the bot's own process, about 10 MiB more peak RSS)."""
    with log.open("wb") as out:
        upgrade = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "verifybot", "db", "upgrade",
            env=env, cwd=tmp, stdout=out, stderr=out,
        )  # fmt: skip
    if await upgrade.wait() != 0:
        raise SystemExit("verifybot db upgrade failed:\n" + _tail(log))


async def _until(ready: Callable[[], bool], process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.returncode is not None or time.monotonic() > deadline:
            raise SystemExit("the bot did not start:\n" + _tail(log))
        await asyncio.sleep(0.05)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--members", type=int, default=200, help="members in each wave")
    parser.add_argument("--waves", type=int, default=3, help="waves of new members, one by one")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--profile", action="store_true", help="py-spy record the bot (200 Hz)")
    parser.add_argument(
        "--syscalls", action="store_true", help="count the bot's system calls (perf stat)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.members, args.waves, args.database_url, args.profile, args.syscalls))


if __name__ == "__main__":
    main()
