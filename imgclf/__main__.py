"""``python -m imgclf`` — the same as the ``imgclf`` command (torchrun uses this form)."""

from imgclf.cli.main import run

if __name__ == "__main__":
    run()
