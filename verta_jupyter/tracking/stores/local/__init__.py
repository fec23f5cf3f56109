"""The embedded store: SQLite metadata (`store`, `folder`), content-addressed blobs (`blobs`),
and its integrity check and garbage collection (`check`)."""
