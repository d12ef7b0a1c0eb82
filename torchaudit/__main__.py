from torchaudit.cli import main

main()
