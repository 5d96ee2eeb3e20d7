from verifybot.cli import main

main()
