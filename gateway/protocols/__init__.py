"""Protocol adapters: bytes <-> sans-IO protocol libraries <-> stream events."""
