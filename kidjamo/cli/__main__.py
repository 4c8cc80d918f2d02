"""``python -m kidjamo.cli``: the same command as ``kidjamo``."""

from kidjamo.cli import main

if __name__ == "__main__":
    main()
