"""tlcore reader plugin for Leica LIF files."""
