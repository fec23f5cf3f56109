"""A store on an MLflow tracking server, over its REST API (`store`, `rest`, `fields`,
`artifacts`, `registry`, `names`, `check`)."""
