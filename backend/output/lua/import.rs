//! `brokerstream import`: Centreon Broker's Lua outputs as brokerstream outputs.
