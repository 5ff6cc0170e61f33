"""Small argparse helpers shared by the `python3 -m hndd_client` commands."""
import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1, with a message saying what is wrong."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
