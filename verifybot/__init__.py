"""The shell: the composition root (bootstrap), the command line (cli) and doctor."""
