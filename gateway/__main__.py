"""``python -m gateway`` is the ``asgigw`` command."""

from gateway.cli import main

if __name__ == "__main__":
    main(prog_name="asgigw")
