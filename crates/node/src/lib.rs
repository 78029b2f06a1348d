//! The node agent: phases, reconcile loop, heartbeats, CSK, app API, peer API, health and metrics.
