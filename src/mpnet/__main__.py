from mpnet.cli.entry import main

main()
