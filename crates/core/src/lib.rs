//! Sans-IO protocol logic: ids, mesh IPs, encodings, sealed boxes, heartbeats, liveness, CSK, push format. No sockets, no clock.
