"""Fleet scale: one verdict kernel, a synthetic fleet, batch and stream engines around it."""

from lightfence.extras import require

require("fleet", "lightfence.fleet", ("pandas", "pyarrow"))
