"""The Textual TUI: one module per tab, loaded when the tab is first shown."""
