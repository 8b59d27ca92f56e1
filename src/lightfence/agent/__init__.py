"""The device agent: measures against landmarks and collects their signed records."""
