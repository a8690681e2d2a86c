"""Group offloading of every component: settings (config), applying them (hooks), named presets, and the
probes that prove the hooks fire."""
