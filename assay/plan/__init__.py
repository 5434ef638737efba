"""Planning: what a pipeline's definitions mean before anything runs. The flow context its queries
read through, the dedupe plan, AUTO CDC's semantics; `assay.graph` analyses with them and
`assay.runtime` executes what they decide. Nothing here imports the runtime: what queries need of
the engine and the storage (its session, the file sources) is handed to the flow context."""
