// Package processors defines jobx's handler file format and the language
// processors that run handler files.
//
// A handler file carries a metadata header in its first docstring or comment
// block (see [ParseHeader]); its handler name derives from its path as in
// JobX (see [HandlerName]); and a [Processor], chosen by file extension (see
// [ForFile]), checks its syntax and installs it as a runnable [Program] that
// speaks the newline-delimited JSON protocol over stdio.
//
// Language processors live in sub-packages and register themselves when
// imported. Import them all with
//
//	import _ "github.com/jobx/jobx/processors/all"
//
// A sketch of loading a directory of handlers:
//
//	files, warnings, err := processors.Discover("handlers")
//	for _, f := range files {
//		src, _ := os.ReadFile(f.Path)
//		meta, err := processors.ParseHeader(f.RelPath, src)
//		...
//		err = f.Processor.Check(ctx, f.RelPath, src)
//		prog, err := f.Processor.Install(dir, processors.Handler{
//			Workflow: wf, Name: f.Name, Type: meta.HandlerType,
//			SourceType: f.Processor.Name(), Source: string(src),
//			Version: processors.Version(src),
//		})
//	}
package processors
