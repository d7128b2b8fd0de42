// Package kvmodel stores jobx's entities, datasets, relationships and
// sessions in etcd v3, in JobX's key layout.
//
// Entities live at /entities/<class>/<workflow>/<id> (a workflow at
// /entities/workflow/<name>) as JSON with JobX's field names. Datasets and
// relationship lists are chunked so that a dataset costs a bounded number of
// keys and every etcd request stays under etcd's request size limit; see
// docs/architecture.md for the full layout.
//
// A Store wraps an etcd client:
//
//	st := kvmodel.NewStore(cli)
//	wf := &kvmodel.Workflow{Name: "build", Description: "build jobs"}
//	if err := st.Create(ctx, wf); errors.Is(err, kvmodel.ErrExists) { ... }
//
// Create is create-only, Update is update-only, UpdateCAS compares the
// revision the entity was read at. Errors wrap ErrNotFound, ErrExists,
// ErrConflict, ErrInvalid and ErrTooLarge; test them with errors.Is.
//
// A request and its invocations change state only through the verbs of
// transitions.go (CreateRequest, RecordLeaf, RecordBranch,
// RecordReduction, CountChildren, FailInvocation, FailRequest, ...), each
// one transaction under its conditions:
//
//	err := st.RecordLeaf(ctx, kvmodel.Seen{Invocation: inv, Request: req}, done, combined, red)
//	if errors.Is(err, kvmodel.ErrConflict) { ... } // a duplicate finished it, or the request ended
package kvmodel
