from mpnet.cli.app import main

main()
