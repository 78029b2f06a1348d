//! Contract bindings, chain reader, log follower, UserOperation builder, bundler and paymaster clients, deployment helpers.
