from horus.cli import main

main()
