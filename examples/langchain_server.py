"""A LangChain app that answers from an index another process keeps up to date.

Run, in three terminals (or as three services):

    tribrid serve --data-dir .tribrid-demo --watch examples/docs   # owns the index
    python examples/langchain_server.py "how does reciprocal rank fusion combine rankings"
    tribrid ingest more-docs/ --data-dir .tribrid-demo              # while the app runs

The app loads no model and opens no store: ``tribrid.as_retriever`` finds the server
from the data dir and returns a retriever that asks it. Its documents carry the fused
score and each channel's score and rank, as an in-process retriever's do.
"""

from __future__ import annotations

import sys

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

import tribrid


def format_documents(documents: list[Document]) -> str:
    return "\n".join(
        f"[{d.metadata['score']:.2f} {d.metadata['path']}] {d.page_content[:200]}"
        for d in documents
    )


def main(question: str) -> None:
    retriever = tribrid.as_retriever(data_dir=".tribrid-demo", k=3)
    print(f"asking {type(retriever).__name__}")  # RemoteRetriever while a server runs
    prompt = ChatPromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    chain = {
        "context": retriever | RunnableLambda(format_documents),
        "question": RunnablePassthrough(),
    } | prompt
    # A model would go after the prompt (`| llm`); none ships offline, so print it.
    print(chain.invoke(question).to_string())


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "how does reciprocal rank fusion combine rankings")
