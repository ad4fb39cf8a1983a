-- HAProxy http-req action: route each request with the native "buggy"
-- module (haproxy_buggy.c). The config's lua-prepend-path puts the compiled
-- buggy.so on package.cpath before this file is loaded.
local buggy = require("buggy")

core.register_action("route_request", { "http-req" }, function(txn)
    local path = txn.sf:path()
    local backend_id, auth_header, min_length = buggy.parse_path(path)
    txn:set_var("txn.backend_id", backend_id)
    txn:set_var("txn.auth_header", auth_header)
    txn:set_var("txn.auth_min_length", min_length)
end)
