"""`lightfence demo`: the whole job on emulated geography, with real packets and signatures."""
