from octo.cli import main

main()
