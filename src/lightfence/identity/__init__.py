"""Device identities: the key that answers challenges, the GPU it is bound to, its evidence."""
