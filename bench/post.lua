-- wrk script: POST a small JSON event, as `curl -XPOST -d '{...}'` would.
wrk.method = "POST"
wrk.body = '{"name":"world","n":42,"tags":["a","b"]}'
wrk.headers["Content-Type"] = "application/json"
