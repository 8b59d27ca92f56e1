"""`lightfence demo`: the whole job on emulated geography, with real packets and signatures."""

from lightfence.extras import EXTRA_MODULES, require

require("demo", "lightfence.demo", EXTRA_MODULES["verifier"])
