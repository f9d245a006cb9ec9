package blockdev

func registerBuiltins(r *Registry) {
	r.Register("malloc", openMalloc)
}
