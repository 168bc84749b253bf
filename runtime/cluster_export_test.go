package statefun

// StopHeartbeatsForTest makes r's cluster node stop renewing its leases,
// as a node that died would, without handing anything off.
func StopHeartbeatsForTest(r *Runtime) {
	r.cluster.cancel()
	<-r.cluster.done
}
