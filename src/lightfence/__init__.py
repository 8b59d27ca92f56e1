"""lightfence: prove which region a GPU is in, from the speed of light and a device-bound key."""

__version__ = "0.1.0"
