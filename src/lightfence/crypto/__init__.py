"""Keys and device identity: Ed25519 keys, key files, identity providers and trust levels."""
