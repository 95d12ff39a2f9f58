"""An example jasrbench plugin: TinyJoint (``jasr_example.model``), registered by its entry point."""
