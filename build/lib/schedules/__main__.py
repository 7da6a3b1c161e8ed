"""`python -m schedules schedule=<name> [key=value ...]`: preview a schedule without training.

The app lives with the other app's code (`trainer.config.preview_app`), so that this library
holds schedules only; the command stays where users know it.
"""

from trainer.config.preview_app import cli

if __name__ == "__main__":
    cli()
