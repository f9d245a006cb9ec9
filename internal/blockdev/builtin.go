package blockdev

func registerBuiltins(r *Registry) {
	r.Register("malloc", openMalloc)
	r.Register("aio", openAIO)
	r.Register("uring", openUring)
}
