"""`make bench`: run every benchmark and print the figures that go to docs/benchmarks.md."""

from __future__ import annotations


def main() -> None:
    print("no benchmarks yet")


if __name__ == "__main__":
    main()
