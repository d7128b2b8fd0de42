package containerd

// Created returns how many boxes the sandbox has started.
func (s *Sandbox) Created() int64 { return s.pool.created.Load() }
