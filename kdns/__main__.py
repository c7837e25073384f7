"""``python -m kdns`` is the ``kdns`` command."""

from kdns.cli.main import main

if __name__ == "__main__":
    main()
