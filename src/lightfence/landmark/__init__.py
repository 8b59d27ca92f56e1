"""The landmark server: configuration, kernel timestamping and the asyncio UDP adapter."""
