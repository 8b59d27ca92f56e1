"""Coverage maps and landmark placement: where an honest device would be VERIFIED, and where the
next landmark buys the most. Adapters over the verdict engine; no physics of their own."""

from lightfence.extras import require

require("coverage", "lightfence.coverage")
