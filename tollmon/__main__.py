from tollmon.cli import main

main()
