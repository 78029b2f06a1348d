//! The Attestor trait, the dstack guest-agent client, and devtee (a local emulator of the dstack guest agent and KMS).
