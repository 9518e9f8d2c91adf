from rvqtool.cli import main

main()
