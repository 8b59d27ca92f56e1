"""`python -m lightfence ...`: the same as the `lightfence` command."""

from lightfence.cli import main

if __name__ == "__main__":
    main()
