from gradience.cli import main

main()
