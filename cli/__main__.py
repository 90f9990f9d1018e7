from rcf.cli.main import main

main()
