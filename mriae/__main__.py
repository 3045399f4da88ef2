from mriae.cli import main

main()
