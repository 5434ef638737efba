"""Places outside Delta that Assay keeps in step with its tables (PostgreSQL: `assay.sinks.postgres`)."""
