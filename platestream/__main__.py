from platestream.cli import main

main()
