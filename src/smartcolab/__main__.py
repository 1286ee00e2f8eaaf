from smartcolab.cli.app import main

main()
