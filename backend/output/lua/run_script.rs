//! `brokerstream run-script`: one script against events from a file or the simulator.
