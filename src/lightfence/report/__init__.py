"""The compliance report (`lightfence report`): gather from the verifier's database, render as
self-contained HTML, print to PDF where chromium is installed."""
